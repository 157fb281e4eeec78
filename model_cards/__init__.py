"""Model card texts, installed as the package `autosam_hf.model_cards` (setup.cfg `package_dir`) and read with
`importlib.resources`: the card template (`template.md`, `autosam_hf.hub.model_card`) and what a card says about
each dataset (`datasets/<name>.yaml`: data, terms, citation; `autosam_hf.data.presets.read_dataset_card`, named by
each preset's `card_name`)."""
