"""The ``mmdet_eakd::`` config names: the shipped configs, by package scope.

This package carries the repository's ``configs/`` folder in
``mmdet_eakd/.mim/configs/configs/``, as mmdet carries its configs in
``mmdet/.mim/configs/`` (setup.py: copied into the wheel, linked into a source
checkout by ``pip install -e``). Once :func:`register_config_scope` ran (it
does at ``import mmdet_eakd``), a config names a shipped one by its path in
the repository, as it names mmdet's by ``mmdet::``::

    _base_ = 'mmdet_eakd::configs/eakd_frcnn_r101_r18.py'

mmengine maps ``scope::path`` to ``<package>/.mim/configs/<path>`` and only
accepts a ``path`` with a folder in it. The extra ``configs/`` level gives the
top-level configs (``eakd_frcnn_r101_r18.py``, ...) that folder, and makes
every name the config's path in the repository.

Relative references inside the shipped configs (``_base_ = './...'``, the
teacher's ``'{{ fileDirname }}/...'``) resolve beside the shipped copy.
"""
from pathlib import Path

from mmengine.config.utils import MODULE2PACKAGE
from mmengine.utils import get_installed_path

SCOPE = 'mmdet_eakd'

#: The package's ``.mim`` folder (mmdet's convention; setup.py fills it).
MIM_DIR = Path(__file__).resolve().parent / '.mim'

#: What a name must start with to denote a shipped config.
CONFIG_PREFIX = f'{SCOPE}::configs/'


def register_config_scope() -> None:
    """Let mmengine resolve ``mmdet_eakd::`` names (``_base_``, teacher
    configs, ``mmengine.hub.get_config``).

    mmengine resolves only the scopes listed in its ``MODULE2PACKAGE`` table,
    then looks for ``<get_installed_path(entry)>/.mim``. The entry is this
    module rather than the distribution: ``get_installed_path`` of a module
    that no distribution is named after is found by import, which gives this
    package's folder for a wheel, a ``pip install --target`` folder and an
    editable install alike (for the distribution of a ``pip install -e``
    checkout it would give ``site-packages/mmdet_eakd``, which does not exist).
    """
    MODULE2PACKAGE[SCOPE] = __name__


def config_dir() -> Path:
    """The shipped copy of the repository's ``configs/`` folder.

    Returns:
        Path: ``mmdet_eakd/.mim/configs/configs``.

    Raises:
        FileNotFoundError: The package was not built by its setup.py (e.g. a
            source checkout that was never installed).
    """
    path = MIM_DIR / 'configs' / 'configs'
    if not path.is_dir():
        raise FileNotFoundError(
            f'{path} does not exist, so the shipped configs ({SCOPE}:: names) '
            'cannot be found. The wheel ships them; a source checkout gets '
            'them, as a link to its configs/ folder, from '
            '`pip install --no-deps -e <checkout>` (tools/setup_env.sh does '
            'that).')
    return path


def config_path(name: str) -> str:
    """The file of a config given by path or by scope name.

    Args:
        name (str): A config file path (returned as is), a shipped config's
            name (``'mmdet_eakd::configs/eakd_frcnn_r101_r18.py'``) or
            another OpenMMLab package's (``'mmdet::faster_rcnn/...'``).

    Returns:
        str: The config file.
    """
    if '::' not in name:
        return name
    scope, _, relative = name.partition('::')
    if scope == SCOPE:
        path = config_dir().parent / relative
    elif scope in MODULE2PACKAGE:
        path = (Path(get_installed_path(MODULE2PACKAGE[scope])) / '.mim' /
                'configs' / relative)
    else:
        raise ValueError(
            f'{name!r} names the config scope {scope!r}, which mmengine does '
            f'not know (it knows {sorted(MODULE2PACKAGE)}). Give a config '
            'file path, or a name such as '
            f'{CONFIG_PREFIX}eakd_frcnn_r101_r18.py.')
    if not path.is_file():
        hint = ''
        if scope == SCOPE and (config_dir() / relative).is_file():
            hint = f' Did you mean {CONFIG_PREFIX}{relative}?'
        elif scope == SCOPE:
            hint = (f' After {SCOPE}:: comes the config\'s path in the '
                    f'repository, e.g. {CONFIG_PREFIX}eakd_frcnn_r101_r18.py '
                    f'(the shipped configs are in {config_dir()}).')
        raise FileNotFoundError(f'{name!r} names {path}, which does not '
                                f'exist.{hint}')
    return str(path)
