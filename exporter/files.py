"""Telling whether a file changed, cheaply (one ``stat``) and across atomic replacements."""

from __future__ import annotations

import os

FileVersion = tuple[int, int, int]


def file_version(path: str | None) -> FileVersion | None:
    """Inode, modification time and size (None if absent). A kubelet Secret update swaps a
    symlink to a new file, which changes the inode even when time and size do not."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
