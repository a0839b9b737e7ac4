"""ament_python / setuptools build for mt_specialize.

Works both under colcon (ROS 2 install: data files go to share/mt_specialize) and with plain
``pip install -e .`` (pip-only users: data files are found next to the package, see
``mt_specialize.paths``).
"""
from glob import glob

from setuptools import find_packages, setup

package_name = "mt_specialize"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, package_name + ".*"]),  # not paper/, test/, bench/
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
        ("share/" + package_name + "/config/experiments", glob("config/experiments/*")),
        ("share/" + package_name + "/urdf", glob("urdf/*.urdf")),
        ("share/" + package_name + "/urdf/meshes", glob("urdf/meshes/*")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "torch==2.13.0",
        "mujoco>=3.3",
        "gymnasium[mujoco]>=1.0",
        "pyyaml",
        "safetensors",
        "tensorboard",
        "matplotlib",
        "rich",
        "imageio",
    ],
    extras_require={
        "ros": [
            "ros-rclpy",
            "ros-rmw-fastrtps-cpp",
            "ros-std-msgs",
            "ros-sensor-msgs",
            "ros-std-srvs",
            "ros-visualization-msgs",
            "ros-geometry-msgs",
            "ros-diagnostic-msgs",
            "mcap>=1.1",
            "foxglove-sdk>=0.30.3,<0.31",  # `mt-specialize up --foxglove`: the live view without rviz2
        ],
        # the Foxglove live view alone (also in "ros"); the WebSocket protocol and the schemas are
        # the SDK's, so it is pinned to a minor version
        "foxglove": ["foxglove-sdk>=0.30.3,<0.31"],
        # mcap-ros2-support decodes MCAP from its schemas, as Foxglove; websockets + protobuf: a
        # Foxglove WebSocket client decoding messages from their advertised schemas
        "test": ["pytest", "pytest-timeout", "ray", "mcap-ros2-support", "websockets>=13", "protobuf"],
        "cluster": ["ray"],
        # the DART physics engine (physics setting ``engine: dart``, profile ``paper_dart``): 6.20.0 is
        # the newest dartpy with a CPython 3.11 wheel
        "dart": ["dartpy==6.20.0"],
        # `mt-specialize export --format onnx` (torch.onnx's exporter needs onnxscript) and serving the
        # exported file (onnxruntime)
        "onnx": ["onnx>=1.17", "onnxscript>=0.5", "onnxruntime>=1.20"],
    },
    zip_safe=True,
    maintainer="mt_specialize developers",
    maintainer_email="dev@mt-specialize.invalid",
    description="Multi-task PPO with gradient-guided policy specialization, MuJoCo robots from URDF, ROS 2 nodes.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mt-specialize = mt_specialize.cli:main",
            "simulator = mt_specialize.ros.entry:simulator",
            "learner = mt_specialize.ros.entry:learner",
            "policy_server = mt_specialize.ros.entry:policy_server",
            "foxglove_view = mt_specialize.ros.entry:foxglove_view",
        ],
    },
)
