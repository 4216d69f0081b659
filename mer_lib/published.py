"""The published numbers of Hoedt, Flexer & Widmer (SMC 2025), for side-by-side comparison.

These are data read off the paper (Table 1 and Fig. 3), not results of this project; the
chapters print them beside what this run measured.

Example:
    >>> TABLE1["a2e"]["avg_r"]
    (0.73, 0.02)
"""

#: Table 1: clean test set, mean and std over 10 seeds; (mean, std) pairs, None where not given.
TABLE1 = {
    "a2e": {"avg_r": (0.73, 0.02), "mae": (0.10, 0.01)},
    "a2b2e": {"avg_r": (0.70, 0.02), "mae": (0.11, 0.01)},
    "a2m2e": {"avg_r": (0.67, 0.02), "mae": (0.11, 0.01)},
    "aa2e": {"avg_r": (0.67, 0.03), "mae": (0.10, 0.00)},
    "aa2b2e": {"avg_r": (0.66, 0.03), "mae": (0.10, 0.00)},
}

#: Table 1's rows of the original models of Chowdhury et al. (2019): average r only.
TABLE1_ORIGINAL = {"a2e": 0.76, "a2m2e": 0.75}

#: Fig. 3: medians of ΔMAE = MAE(adversarial) − MAE(clean) over seeds, read off the plot
#: (reference attack: its ε-clip was a no-op).
FIG3_DELTA_MAE_MEDIAN = {"a2e": 1.6, "a2b2e": 1.5, "aa2e": 1.0, "aa2b2e": 1.0, "a2m2e": 1.0}

#: Display names of the variants as the paper writes them.
DISPLAY_NAMES = {"a2e": "A2E", "a2b2e": "A2B2E", "a2m2e": "A2M2E", "aa2e": "aA2E", "aa2b2e": "aA2B2E"}
