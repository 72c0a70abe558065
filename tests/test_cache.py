"""VideoCache.open: the memory map training reads every clip through."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest

from echoclr.data.cache import VideoCache


def buffer_of(array: np.ndarray):
    """What an array's memory finally belongs to."""
    while isinstance(array, np.ndarray):
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


def test_open_is_a_read_only_map_of_the_saved_array_and_sees_a_replaced_file(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,study_id\nv.npy,S1\nf.npy,S2\n")
    video = np.random.default_rng(0).integers(0, 256, (7, 5, 6), dtype=np.uint8)
    np.save(tmp_path / "v.npy", video)
    np.save(tmp_path / "f.npy", np.asfortranarray(video))  # another memory order
    cache = VideoCache(tmp_path)
    for name in ("v.npy", "f.npy"):
        got = cache.open(name)
        np.testing.assert_array_equal(got, np.load(tmp_path / name))
        assert got.dtype == np.uint8 and isinstance(buffer_of(got), mmap.mmap)  # mapped
        assert not got.flags.writeable
        with pytest.raises(ValueError):
            got[0, 0, 0] = 1
    np.testing.assert_array_equal(cache.open("v.npy")[[1, 3]], video[[1, 3]])

    # Rewritten in place with another shape (as a re-ingest would): the new header is read.
    longer = np.concatenate([video, video])
    np.save(tmp_path / "v.npy", longer)
    stat = os.stat(tmp_path / "v.npy")
    os.utime(tmp_path / "v.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    np.testing.assert_array_equal(cache.open("v.npy"), longer)
