"""Code the tests share: tiny configurations, a project clone, archives, a killable training run,
the Kaggle stand-in, the sample's probes, and the stages' code deps."""
