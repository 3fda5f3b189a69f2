"""The chapter across architectures (and, next, languages): does an SAE's dictionary carry over to a model built of
other blocks on the same tokenizer, data and budget?"""
