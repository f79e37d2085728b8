"""The browser console: server-rendered pages over the domains' services (docs/console.md).

``routes`` answer the pages and their actions, ``views`` turn service results into what a
template shows, ``templates`` and ``static`` are the pages themselves, ``web`` holds the
security headers and CSRF rules every console response follows, ``guard`` the cookie-session
check every page and action passes (the same permission codes as the API), ``assets`` the
static files (vendored front-end included) and the offline /docs and /redoc.
"""
