"""The CSL front end.

Pipeline: :mod:`.lexer` → :mod:`.parser` (typed AST in :mod:`.ast`, spans in :mod:`.source`)
→ :mod:`.comptime` (compile-time evaluation; builtins in :mod:`.builtins`, imports and standard
libraries in :mod:`.modules`) → :mod:`.layout` (elaboration of ``layout {}`` into a
:class:`~.layout.Layout`). :mod:`.printer` turns an AST back into CSL. Every user error is a
:class:`~.errors.CslError`.
"""

from .errors import CslError, CslImportError, CslLayoutError, CslSemanticError, CslSyntaxError

__all__ = ["CslError", "CslImportError", "CslLayoutError", "CslSemanticError", "CslSyntaxError"]
