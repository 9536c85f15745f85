"""Layer apply and diff: containerd's archive, diff/apply and diff/walking, in Python.

- ``apply.apply_layer(stream, root, overlay_lowers=None) -> ApplyResult``
  unpacks a gzip/zstd/plain layer tar onto a directory or an overlay upperdir,
  confined to ``root``, and returns the diff_id (sha256 of the uncompressed
  tar) and its size.  ``compression`` detects and inflates; ``reader`` digests
  while reading ahead; ``tarstream`` parses headers; ``dirs`` opens the
  directories entries land in without following a symlink out of the root
  (``lamina.core.paths`` resolves names in the lowers); ``copyup`` fills an
  upperdir from its lowers.
- ``compare.write_diff(lower_root, upper_root, out)`` writes the layer that
  turns one tree into the other; ``compare.write_overlay_diff(upper, lowers,
  out)`` reads the same from an overlay upperdir.  ``changes`` computes the
  change lists both use.

Mounting the snapshot mounts these work on is ``lamina.core.mount_ops``.
"""
