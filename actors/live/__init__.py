"""Live feed: gateway events pushed to apps and terminals as they happen.

    sources (charger, harvest, supervisor actors)
        --LiveEvent-->  API actor  --hub.publish-->  Hub  --per-subscriber queues-->  websocket / SSE

* `messages.LiveEvent` is what actors send; `publisher.LivePublisher` sends it
  fire-and-forget to the API actor (looked up as "api", re-looked-up after failures).
* `hub.Hub` numbers events per topic, keeps a bounded history for resume, and fans each
  event out once to bounded subscriber queues (lagging subscribers are told so).
* `routes.add_live_routes` serves `GET /api/live` (websocket) and `GET /api/live/sse`.
* `tokens` issues and checks per-transaction tokens for a driver's app.
* `cli` is `egw watch TOPIC`.
"""
