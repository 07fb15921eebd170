"""Drone scenario (MuJoCo): a Crazyflie 2.x flies to a target among obstacles.

Modules, mirroring the car's (``sim/``):

- :mod:`.quadrotor`: the airframe (MJCF and identified parameters from the ``drone-models``
  package) and the on-board velocity -> attitude/thrust cascade.
- :mod:`.world`: seeded forest or urban scenes with a target object; their MJCF.
- :mod:`.drone_sim`: :class:`~.drone_sim.DroneSim`, the closed-loop simulator (physics, camera,
  collisions, task metrics).
- :mod:`.conditions`: the training condition and the named shifts (season, dusk, fog, noise,
  urban, target rotated/occluded, distractors, range).
- :mod:`.scenario`: :func:`~.scenario.make_drone_sim` and the privileged, perturbed expert.
"""
