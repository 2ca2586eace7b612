import sys
from pathlib import Path

# Lets the tests here `import rl_cases`; pytest's importlib mode does not add test folders to sys.path.
sys.path.insert(0, str(Path(__file__).parent))
