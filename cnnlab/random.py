"""One seeded source of randomness for initializers, dropout and shuffling.

``set_random_seed(s)`` makes a whole run reproducible; every consumer draws a
child generator from here, so the order in which layers are built is what
decides their weights, as in Keras.
"""
import numpy as np

_root = np.random.default_rng()


def set_random_seed(seed):
    global _root
    _root = np.random.default_rng(seed)


def make_rng(seed=None):
    """A new Generator: from ``seed`` when given, else drawn from the global one."""
    if seed is not None:
        return np.random.default_rng(seed)
    return np.random.default_rng(_root.integers(0, 2**63 - 1))


def global_rng():
    return _root


def get_rng_state(rng):
    """JSON-safe state of a Generator (PCG64)."""
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"],
            "state": {"state": str(st["state"]["state"]), "inc": str(st["state"]["inc"])},
            "has_uint32": st["has_uint32"], "uinteger": st["uinteger"]}


def set_rng_state(rng, state):
    rng.bit_generator.state = {"bit_generator": state["bit_generator"],
                               "state": {"state": int(state["state"]["state"]), "inc": int(state["state"]["inc"])},
                               "has_uint32": state["has_uint32"], "uinteger": state["uinteger"]}
