"""bnkeras.training: configs, data, models and the trainer behind `bnkeras train`."""
