"""Package discovery that setup.cfg cannot express: every `autosam_hf.*` package found in the tree, plus
`autosam_hf.model_cards`, which is the top-level `model_cards/` folder (`package_dir` in setup.cfg). Everything
else is in setup.cfg."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["autosam_hf", "autosam_hf.*"]), "autosam_hf.model_cards"])
