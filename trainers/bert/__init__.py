"""BERT pretraining task: Model Garden's BERT with masked-LM and next-sentence losses."""
