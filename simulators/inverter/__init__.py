"""A Modbus TCP inverter/meter simulator serving any shipped device profile.

    from simulators.inverter import InverterSimulator
    sim = InverterSimulator("huawei_sun2000", port=0, units=(1, 2))
    sim.start()            # serves on 127.0.0.1:sim.port from a background thread
    sim.faults.delay_s = 2 # fault injection, changeable while running
    sim.stop()

Command line: `python -m simulators.inverter --profile NAME --port N`.
"""

from simulators.inverter.model import PvModel
from simulators.inverter.server import FaultPlan, InverterSimulator, SimulatedUnit

__all__ = ["FaultPlan", "InverterSimulator", "PvModel", "SimulatedUnit"]
