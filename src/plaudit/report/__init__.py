"""The static HTML report (`plaudit report`): the catalogue, charts, leaderboards and user
pages of a plaudit database, as one folder of HTML (build.py)."""
