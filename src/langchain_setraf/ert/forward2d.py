"""2.5-D DC forward model and Jacobian by pole fields and reciprocity (numpy/scipy).

One sparse factorisation per wavenumber and one solve per *electrode* (a unit pole
current at each electrode) give every quadrupole's potential by superposition and its
whole Jacobian row by reciprocity, ``∂V/∂σⱼ = -Σ_ky w_ky · u_rxᵀ (∂A/∂σⱼ) u_src``: no
per-datum adjoint solves and no per-source interpolation matrices (which cost SimPEG's
``Simulation2DNodal`` ~60 % of an iteration). The discretisation is SimPEG's nodal one
(``A = Gᵀ diag(Pₑσ) G + ky² diag(Pₙσ) + diag(B_ky σ)`` with mixed boundary conditions on the
sides and bottom) on a ``discretize`` tensor mesh, with the same optimised wavenumber
quadrature.

Needs numpy, scipy and discretize (the ``invert`` extra); import it lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from scipy.optimize import minimize  # type: ignore[import-untyped]
from scipy.special import k0, k0e, k1e  # type: ignore[import-untyped]

from langchain_setraf.ert.solvers import Factoriser, pick_solver

__all__ = ["Factoriser", "PoleForward", "Quadrupole", "pick_solver", "wavenumbers"]

#: (a, b, m, n) electrode indices; ``None`` = a remote electrode.
Quadrupole = tuple[int, int | None, int, int | None]


def wavenumbers(min_r: float, max_r: float, nky: int) -> tuple[np.ndarray, np.ndarray]:
    """Wavenumbers and weights of the inverse cosine transform (1/π included).

    The points minimise the misfit of ``Σ wᵢ r K₀(kᵢ r) ≈ 1`` for ``r`` log-spaced over
    ``[min_r/4, 4·max_r]`` (SimPEG's optimised quadrature), so the number of wavenumbers can
    be matched to the span of electrode distances.
    """
    rs = np.logspace(np.log10(min_r / 4), np.log10(max_r * 4), 100)
    ones = np.ones_like(rs)

    def lsq(k: np.ndarray) -> np.ndarray:
        a = rs[:, None] * k0(rs[:, None] * k)
        return np.asarray(np.linalg.solve(a.T @ a, a.T @ ones))

    def misfit(logk: np.ndarray) -> float:
        k = 10**logk
        a = rs[:, None] * k0(rs[:, None] * k)
        return float(np.linalg.norm((ones - a @ lsq(k)) / len(rs)))

    start = np.linspace(-np.log10(rs).max(), -np.log10(rs).min(), nky)
    points = 10 ** minimize(misfit, start).x
    return points, lsq(points) / 2


class PoleForward:
    """Potentials and Jacobian of quadrupoles on a 2-D tensor mesh with fixed air cells.

    Args:
        mesh: A ``discretize.TensorMesh`` (2-D, z up).
        active: Boolean per cell: ground (in the model) or air (fixed ``sigma_air``).
        electrodes: (x, z) of each electrode, on mesh nodes at the ground surface.
        quadrupoles: One (a, b, m, n) per datum; ``None`` for a remote electrode.
        nky: Number of wavenumbers.
        solver: The direct solver (default :func:`~langchain_setraf.ert.solvers.pick_solver`
            with ``"auto"``).
        workers: Threads solving wavenumbers in parallel (default: 2).
    """

    def __init__(
        self,
        mesh: Any,
        active: np.ndarray,
        electrodes: np.ndarray,
        quadrupoles: Sequence[Quadrupole],
        *,
        nky: int,
        solver: Factoriser | None = None,
        workers: int = 2,
        sigma_air: float = 1e-8,
    ) -> None:
        self.mesh = mesh
        self.active = np.asarray(active, dtype=bool)
        self.sigma_air = sigma_air
        self.solver = solver or pick_solver()
        self.workers = max(1, workers)
        n_el = len(electrodes)
        self.grad = mesh.nodal_gradient.tocsr()
        vol = mesh.cell_volumes
        self.p_edge = (
            mesh.get_edge_inner_product_deriv(np.ones(mesh.n_cells))(np.ones(mesh.n_edges))
        ).tocsr()
        self.p_node = (mesh.average_node_to_cell.T @ sp.diags(vol)).tocsr()
        self.q = mesh.get_interpolation_matrix(np.asarray(electrodes), "nodes").T.tocsc()
        remote = n_el
        self.index = tuple(
            np.array([remote if e is None else e for e in col], dtype=np.intp)
            for col in zip(*quadrupoles, strict=True)
        )
        self.p_edge_act_t = self.p_edge[:, self.active].T.tocsr()
        self.p_node_act_t = self.p_node[:, self.active].T.tocsr()
        spacings = np.linalg.norm(np.diff(np.asarray(electrodes), axis=0), axis=1)
        span = float(np.ptp(np.asarray(electrodes)[:, 0]))
        self.ky, self.w = wavenumbers(float(np.min(spacings[spacings > 0])), span, nky)
        self.boundary = [self._robin(k) for k in self.ky]
        self.boundary_act_t = [b[:, self.active].T.tocsr() for b in self.boundary]

    def _robin(self, ky: float) -> Any:
        """``B_ky`` (nodes × cells): the mixed boundary term on the sides and bottom."""
        mesh = self.mesh
        faces = mesh.boundary_faces
        normals = mesh.boundary_face_outward_normals
        top = float(np.max(mesh.nodes[:, -1]))
        not_top = ~np.isclose(faces[:, -1], top) | (np.abs(normals[:, -1]) < 0.5)
        source = np.r_[np.median(mesh.nodes[:, 0]), top]
        r_vec = faces - source
        r = np.maximum(np.linalg.norm(r_vec, axis=1), 1e-9)  # top faces: unused
        alpha = np.zeros(len(faces))
        cos = np.einsum("ij,ij->i", r_vec / r[:, None], normals)
        alpha[not_top] = ky * k1e(ky * r[not_top]) / k0e(ky * r[not_top]) * cos[not_top]
        p_bf = mesh.project_face_to_boundary_face
        n2f = p_bf @ mesh.average_node_to_face
        c2f = sp.diags(alpha * (p_bf @ mesh.face_areas)) @ p_bf @ mesh.average_cell_to_face
        return (n2f.T @ c2f).tocsr()

    def sigma(self, log_sigma: np.ndarray) -> np.ndarray:
        """Conductivity of every cell (air included) from log σ of the active cells."""
        full = np.full(self.mesh.n_cells, self.sigma_air)
        full[self.active] = np.exp(log_sigma)
        return full

    def _one_ky(self, i: int, sigma: np.ndarray, want_j: bool) -> tuple[np.ndarray, Any]:
        ky, w = float(self.ky[i]), float(self.w[i])
        node_diag = ky**2 * (self.p_node @ sigma) + self.boundary[i] @ sigma
        a = self.grad.T @ sp.diags(self.p_edge @ sigma) @ self.grad + sp.diags(node_diag)
        u = self.solver.solve(a, self.q.toarray())  # nodes × electrodes
        # a zero column stands for a remote electrode (index n_electrodes)
        u = np.hstack([u, np.zeros((u.shape[0], 1))])
        phi = np.asarray(self.q.T @ u[:, :-1])
        phi = np.pad(phi, ((0, 1), (0, 1)))
        ia, ib, im, in_ = self.index
        volts = w * (phi[im, ia] - phi[im, ib] - phi[in_, ia] + phi[in_, ib])
        if not want_j:
            return volts, None
        gu = np.ascontiguousarray(self.grad @ u)
        node_op = (ky**2 * self.p_node_act_t + self.boundary_act_t[i]).tocsr()
        n_d = len(ia)
        jac = np.empty((self.p_edge_act_t.shape[0], n_d))  # active cells × data
        for lo in range(0, n_d, 256):
            c = slice(lo, min(lo + 256, n_d))
            grad_src = gu[:, ia[c]] - gu[:, ib[c]]
            grad_rec = gu[:, im[c]] - gu[:, in_[c]]
            src = u[:, ia[c]] - u[:, ib[c]]
            rec = u[:, im[c]] - u[:, in_[c]]
            jac[:, c] = self.p_edge_act_t @ (grad_src * grad_rec) + node_op @ (src * rec)
        jac *= -w
        return volts, jac

    def response(self, log_sigma: np.ndarray, *, jacobian: bool = True) -> tuple[Any, Any]:
        """Potentials (V per A) of every quadrupole and, if asked, ∂V/∂log σ (active cells).

        Args:
            log_sigma: ln σ of the active cells.
            jacobian: Also return the Jacobian (data × active cells).

        Returns:
            ``(volts, jac)``; ``jac`` is ``None`` when not asked.
        """
        sigma = self.sigma(log_sigma)
        volts: Any = 0.0
        jac: Any = None

        def one(i: int) -> tuple[np.ndarray, Any]:
            return self._one_ky(i, sigma, jacobian)

        with ThreadPoolExecutor(self.workers) as pool:
            for v, j in pool.map(one, range(len(self.ky))):  # summed as they come
                volts = volts + v
                if j is not None:
                    jac = j if jac is None else jac + j
        if jac is not None:
            jac = jac.T * sigma[self.active]  # data × active cells
        return np.asarray(volts), jac
