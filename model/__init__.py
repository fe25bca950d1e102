"""logdistill.model: data, templates, the distillation engine and the artifact format.

Submodules that need torch (``train``, ``distill``, ``export``, ...) import it themselves;
``templates``, ``data``, ``splits`` and ``artifact`` stay light for the edge and the operator.
"""
