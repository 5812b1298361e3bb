"""The Mastodon client API, with the entity shapes Mastodon documents."""
