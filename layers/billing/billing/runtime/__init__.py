"""How the package runs: ``settings`` (typed, read once), ``container`` (the composition root: the only
module that builds services), ``http`` (typed errors and results to API Gateway responses, the
request helpers every handler uses), ``observability`` (Powertools logger, tracer, metrics)."""
