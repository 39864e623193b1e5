# vaeflow: VAEs against normalizing flows, as one reproducible workflow.
#   config -> code digests -> data -> train -> evaluate -> analyses (papermill) -> site (Quarto)
# One stage per rules file under workflow/rules/; no logic lives in rules: they call
# the package through `python -m vaeflow ...`.
import sys
import time
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# Jobs run the code of *this* checkout (src/), so the source files a rule declares as
# inputs are the code that actually runs.
SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))
STARTED = time.time()

from vaeflow.config import DEFAULT_CONFIG, read_config_files, validate_config
from vaeflow.jobenv import use_checkout

use_checkout(SRC)

# The study's files: those given with --configfile, else the default study. Read here first, so
# that every message names the file (and the line and column of a YAML error, which Snakemake's
# own reading of `configfile:` leaves out; it reads --configfile files before this file runs).
CONFIG_FILES = read_config_files(workflow.overwrite_configfiles or [DEFAULT_CONFIG])

# A config file given with --configfile replaces the default study instead of being
# merged into it, so config/smoke.yaml and config/paper.yaml are exactly what they say.
if not workflow.overwrite_configfiles:

    configfile: DEFAULT_CONFIG


validate_config(config, SRC.parent / "config" / "schema.yaml", files=CONFIG_FILES, overrides=workflow.config_settings.config)


# Snakemake's own HTML report (`snakemake --report results/report.html`): this text, then every
# table and figure of the analyses with its caption (workflow/report/).
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/code.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/analyses.smk"
include: "workflow/rules/site.smk"


rule all:
    default_target: True
    input:
        all_targets(),


onstart:
    check_outputs_writable(workflow.dag.needrun_jobs())
    announce_site()


onsuccess:
    announce_site()
    print(f"vaeflow: workflow finished in {time.time() - STARTED:.0f} s wall time")
