"""Known answers: finetunes whose feature changes are planted, so the truth is known by construction, and every
method of the book scored against it."""
