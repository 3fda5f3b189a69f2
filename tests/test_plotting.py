"""The figure helpers every chapter shares."""


def test_panels_hold_at_most_three_to_a_row():
    import matplotlib.pyplot as plt

    from sae_transfer.core.plotting import MAX_COLS, panels

    for n, cols, shape in ((1, None, (1, 1)), (3, None, (1, 3)), (6, None, (2, 3)), (4, 2, (2, 2)), (7, None, (3, 3))):
        fig, axes = panels(n, 2.0, 1.5, cols=cols)
        assert len(axes) == len(fig.axes) == n  # the unused places of the last row are left empty
        assert tuple(fig.get_size_inches()) == (2.0 * shape[1], 1.5 * shape[0])
        assert fig.get_size_inches()[0] <= 2.0 * MAX_COLS
        plt.close(fig)
