"""Real echo data, one job per module: reading (``video``, ``dicom``, sharing ``video_types``),
the fan mask (``fan``), preprocessing and its record (``preprocess``), the cache (``cache``), the
manifest (``manifest``), datasets, transforms and the resumable sampler (``sampling``).
"""
