"""The pure core: numpy only, never rclpy, ROS messages or torch.

Lives here: the shared result and input types (:mod:`.types`), the injected interfaces of the
pipeline (:mod:`.interfaces`: matcher, depth provider, patch source), local geodesy (WGS84 <->
map ENU), camera models and depth lifting into a gravity-aligned planar body frame, the weighted
2-D scale-aware Procrustes (Umeyama) solver, RANSAC around it, the inlier-based covariance and
gating, and the :class:`Localizer` that ties them into one call: ground image + camera + gravity
+ aerial patch + GNSS prior -> ``PoseEstimate`` or a failure reason.
"""
