"""Research tools over the installed lumiere_pl: what a model learned and how a recipe compares, never part of it.

  probes          motion-diagnosis probes of a trained STUNet (appearance, block artefact, direction-word swap,
                  loss and x0 coherence by noise level)
  shapes_motion   the moving-shapes motion tracker (direction match, jump, jerk) the probes and scripts score with
  sweep           lumiere-sweep: a grid of config overrides x training seeds, trained, sampled, scored in one table
  tiny_diffusers  tiny random diffusers pipelines built offline (tests and benchmarks)
  score_motion, apply_motion, stylize_motion, two_clips, word_value, sampler_steps
                  the experiment scripts of docs/MOTION.md, docs/APPLICATIONS.md and docs/BENCHMARKS.md:
                  python -m lumiere_research.<name> --help

lumiere_pl imports nothing from here (tests/test_structure.py checks it).
"""

from eval.signals import while_starting  # noqa: E402

while_starting({"lumiere-sweep": "lumiere_research.sweep"})    # Ctrl-C while the command imports: one line, exit 130
