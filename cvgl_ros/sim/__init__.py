"""Synthetic sensor data with exactly known poses, for evaluation and the demo.

- :mod:`cvgl_ros.sim.render`: camera views rendered from a georeferenced aerial patch (the
  "world"): nadir / oblique drone cameras through the exact ground-plane homography, and a
  forward-looking ground-level camera over a *flat* ground (a simplification: buildings and
  trees are painted on the ground plane, there is no parallax and no occlusion).
- :mod:`cvgl_ros.sim.trajectories`: straight lines, loops and random walks in a local ENU frame.
- :mod:`cvgl_ros.sim.gnss`: GNSS receiver error models (bias, random walk, white noise,
  dropouts) producing the coarse prior.
- :mod:`cvgl_ros.sim.photometric`: gamma, blur, noise and JPEG changes between map and camera.
- :mod:`cvgl_ros.sim.synthetic_map`: a procedurally generated, clearly labelled *synthetic*
  orthophoto (fields, roads, buildings, trees, multi-scale noise) the demo can ship.

Nothing here imports ROS; :mod:`cvgl_ros.tools.synth` writes the bags.
"""
