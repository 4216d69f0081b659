"""Datasets: one module per dataset, plus the synthetic corpus in the same layout.

- :mod:`mer_lib.datasets.soundtracks` — Soundtracks Set 1 (Eerola & Vuoskoski 2011)
- :mod:`mer_lib.datasets.midlevel`    — Mid-level Perceptual Features (Aljanaki & Soleymani 2018)
- :mod:`mer_lib.datasets.corpus`      — the two joined by Soundtracks number
- :mod:`mer_lib.datasets.synthetic`   — a procedurally generated corpus in the real layouts
"""

#: The eight emotion ratings of Soundtracks Set 1, in file order.
EMOTIONS = ("valence", "energy", "tension", "anger", "fear", "happy", "sad", "tender")

#: The seven mid-level perceptual features, in the order of ``annotations.csv``.
MIDLEVEL = ("melodiousness", "articulation", "rhythm_complexity", "rhythm_stability",
            "dissonance", "tonal_stability", "minorness")
