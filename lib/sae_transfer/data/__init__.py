"""Text as tokens: token windows and batches from every dataset source (``tokens``), the answerability prompt
set (``answerable``), and the text around one token (``contexts``)."""
