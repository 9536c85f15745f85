"""Side-by-side benchmarks of laminad and Debian's containerd 1.6, driven by the real ``ctr``.

Both daemons run at once on their own short temp roots, and every workload
alternates A/B per iteration so that machine noise lands on both sides alike.
Run ``python -m bench`` (about 15 minutes) or ``python -m bench --quick``
(under 3 minutes); both write ``docs/benchmarks.md`` and
``bench/results/<timestamp>.json``.
"""
