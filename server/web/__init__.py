"""The browser client: server-rendered pages (Jinja2), enhanced by one script of our own.

Conventions (docs/architecture.md, "Web client", says the same):

- **Routes.** Each module has `routes = web.RouteTableDef()`; `server/web/routes.py` lists the
  modules (add yours there). Decorate every handler with `@page` (from `server.web.pages`):
  a refusal (`ApiError`) is then shown as an HTML page with its status, not as JSON.
- **The signed-in user.** `await viewer(request)` is the `Account` of the session cookie or
  None; `await require_viewer(request)` sends anyone else to sign in (and back afterwards).
  Pages never see an access token.
- **Rendering.** `await render(request, "web/x.html", status, **values)`: templates extend
  `base.html` (the layout: skip link, header and nav, `main#main`, footer) and get `viewer`,
  `csrf_token`, `unread` and `current_path` besides their values. Read the same facts the
  Mastodon API shows through the domain (`server/social/…`) and `Presenter`
  (server/api/mastodon/entities.py); never call our own HTTP API from the server. Escape
  everything (autoescape is on); `|safe` only for stored, sanitised HTML (`content`, a remote
  `note`); user-supplied URLs go through the `http_url` filter (no `javascript:`).
- **Forms.** `method="post"`, `{{ f.csrf() }}` (from `web/_fields.html`, with the field
  macros that put each label and its inline error together), and on the server
  `form = await read_form(request)`: it checks the CSRF token (an HMAC of the session cookie,
  or of an anonymous cookie before signing in) and the Origin/Referer, and answers 403
  otherwise. Bad input re-renders the form with `errors` (a `FormErrors` by field name) and a
  4xx status, and changes nothing. Success answers `see_other(next)` (303).
- **Snappy forms.** `<form data-enhance>`: kith.js posts it with fetch and the header
  `X-Kith-Partial: 1`; when `is_partial(request)`, answer `render_fragment(...)` instead of a
  redirect: each top-level element of the fragment replaces the element with the same `id`
  in the page, or, with `data-insert="prepend:ID"`, is put first in element ID. Without
  JavaScript the same form posts normally.
- **Live updates.** `{% block body_attributes %} data-stream="user"{% endblock %}` (a stream
  name of the streaming API) makes kith.js open `/api/v1/streaming` with the session cookie
  (same origin only); an `update` is fetched as `/statuses/ID/card` and put first in the
  element marked `data-feed`, `delete` removes `#status-ID`, `notification` bumps the unread
  badge. Pages say `data-more` on their "older" link for infinite scroll. What came while the
  stream was not listening (between rendering and subscribing, or during a reconnection) is
  fetched once it listens: a chat's new messages (after its `data-last`), and the wallet's
  payments stored since its mark (`data-payments-since`, `/wallet/changes`).
"""
