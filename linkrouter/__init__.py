"""
linkrouter: stateless, signed email link tracking on Twisted.

Links are issued by L{linkrouter.codec.sign}, checked by L{linkrouter.codec.verify} and
redirected by the C{twistd linkrouter} daemon.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
