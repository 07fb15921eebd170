"""Interpretability: what a policy attends to, how its neurons move, how it is wired.

=====================  =====================================================================
module                 what
=====================  =====================================================================
``saliency``           integrated gradients for any policy (Sundararajan et al. 2017);
                       VisualBackProp and overlays (Bojarski et al. 2018, as used by Lechner
                       et al. 2020) come from ``models.attention``
``openloop``           a policy run over recorded frames with the runtime's stepping; neuron
                       activity by group (NCP sensory / inter / command / motor; baselines'
                       hidden units)
``frames``             camera frames and commands out of a rosbag2 (sqlite3 or MCAP)
``plots``              neuron traces, the NCP wiring with synapse polarity, commands, contact
                       sheet, video frames
``report``             ``ltc-controller explain``: all of it for one bag and several policies
``video``              a video file as a rosbag2 of CompressedImage; MP4/GIF writing
``robustness``         the NCP paper's attention-robustness protocol (saliency SSIM under
                       camera noise) and its Markdown table
``metrics``            saliency mass on a mask, enrichment, where the mass lies
=====================  =====================================================================

The live ``~/saliency`` worker of the ``ltc_policy`` node is ``nodes.saliency``.

Nothing here imports ROS, DDS or the transport: bags are read and written with the project's
typestore (:func:`ltc_controller.interfaces.typestore`, rosbags only).
"""
