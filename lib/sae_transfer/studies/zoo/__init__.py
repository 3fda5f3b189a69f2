"""The zoo page: what the models and SAEs are, from the zoo card (figures and prose only)."""
