"""The ROS 2 adapter: the rclpy node and nothing clever.

Lives here: the node (parameter declaration and validation into the core's frozen configs,
subscriptions that store the latest message, one worker thread calling the Localizer,
publishers), message <-> core conversions (``convert.py``), topic and frame constants
(``constants.py``), the diagnostics level policy (``diagnostics.py``) and the gpsd fix source.
No geometry or matching code lives here.
"""
