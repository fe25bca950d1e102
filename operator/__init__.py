"""logdistill.operator: the kopf operator for DistilledModel resources (never imports torch)."""
