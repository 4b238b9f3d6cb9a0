"""Aerial imagery: tile sources, a durable disk cache, prefetch and metric patches.

Lives here: the tile source interface and its implementations (XYZ/WMTS over HTTP, OGC WMS,
MBTiles files, local GeoTIFF orthophotos), the MBTiles-compatible SQLite cache with atomic
writes, decode validation and LRU eviction, the background prefetch worker that follows the GNSS
fix, and the assembly of north-up metric ``AerialPatch`` images centred on a fix.
"""
