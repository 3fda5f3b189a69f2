"""The chapter across languages: does a base SAE survive a finetune into another language, and which of its
features are language-general (they fire on a verse and on its translation alike) before and after?"""
