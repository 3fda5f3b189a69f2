"""The atlas: every finetune and checkpoint of one base in one table, the base's passes computed once, with the
verdict of each and the predictors that need no training data."""
