"""Reading and writing models: the checkpoint format (`checkpoint`), every TransformerLens
config field honoured or refused (`fields`), and weights files checked against the config
before any tensor is read (`weights`). Below the engine: reading a model needs no trainer."""
