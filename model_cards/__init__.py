"""Model card templates, installed as the package `autosam_hf.model_cards` (setup.cfg `package_dir`) and read with
`importlib.resources` by `autosam_hf.hub.model_card`. The facts about each dataset live in its preset
(`autosam_hf.data.presets`, `DatasetPreset.card`)."""
