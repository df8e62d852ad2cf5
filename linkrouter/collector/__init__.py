"""
The collector: the central API the routers sync their journals to (C{twistd linkcollector}).
"""
