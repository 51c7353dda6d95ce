"""Caption coding: LM arithmetic coding and classical baselines behind one protocol."""
