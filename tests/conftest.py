import sys
from pathlib import Path

# Lets test files `import harness` without installing anything.
sys.path.insert(0, str(Path(__file__).parent))
