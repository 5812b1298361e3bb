"""The social domain: accounts' public faces, posts, chats, follows, timelines."""
