"""The README's sampler table is the one the solvers' declarations write
(``python -m pds.sampling.table``): a new solver's row, or a changed policy, NFE or reference,
cannot leave the README behind."""

from pathlib import Path

from pds.sampling.table import END, START, markdown_table

README = Path(__file__).resolve().parents[1] / 'README.md'


def test_readme_sampler_table_is_generated_from_the_declarations():
    text = README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, 'README.md: sampler-table markers'
    got = text[text.index(START):text.index(END) + len(END)]
    assert got == markdown_table(), ('README.md sampler table is stale: replace it with the '
                                     'output of `python -m pds.sampling.table README.md`')
