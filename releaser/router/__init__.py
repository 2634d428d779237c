"""Routers: the load balancers in front of an environment (nginx; HAProxy next).

With a router, gray goes to a share of *users* (a sticky hash of a cookie, a header or the
client address) rather than of requests, every host is drained before its switch and put back
after, and a rollback first sends every user back to the stable side in one change. `route`
is the router-neutral state; `keeper` journals and applies it; a router type renders it."""
