"""Plotly figures with units on the axes and hover text people can read at a glance."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

HEIGHT = 320


def preload() -> None:
    """A 1-pixel empty chart on the sign-in page: the browser fetches and compiles Plotly's 3.5 MB bundle while the
    user types, not on the first chart page (about 1.3 s of CPU on a 2-core machine, measured in bench_console)."""
    with st.container(height=1, border=False):
        st.plotly_chart(go.Figure(layout={"height": 10}), config={"staticPlot": True})


def _finish(fig: go.Figure, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend_title_text="",
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0}, hoverlabel={"namelength": -1})
    return fig


def timeseries(frame: pd.DataFrame, *, x: str, y: str, title: str, unit: str, color: str | None = None) -> go.Figure:
    """One line per `color` group; hover shows the value with its unit."""
    fig = px.line(frame, x=x, y=y, color=color, title=title)
    fig.update_traces(hovertemplate=f"%{{x|%Y-%m-%d %H:%M:%S}}<br>%{{y:,.1f}} {unit}<extra>%{{fullData.name}}</extra>")
    fig.update_yaxes(title_text=unit)
    fig.update_xaxes(title_text=None)
    fig.update_layout(hovermode="x unified")
    return _finish(fig)


def heatmap(values: pd.DataFrame, *, title: str, unit: str, colorscale: str = "RdYlGn_r",
            zrange: tuple[float, float] | None = None) -> go.Figure:
    """Rows are hosts, columns GPU indices; empty cells are GPUs that sent nothing."""
    fig = go.Figure(go.Heatmap(
        z=values.to_numpy(), x=[f"GPU {c}" for c in values.columns], y=list(values.index),
        colorscale=colorscale, zmin=zrange[0] if zrange else None, zmax=zrange[1] if zrange else None,
        colorbar={"title": {"text": unit}}, xgap=2, ygap=2,
        hovertemplate=f"%{{y}} · %{{x}}<br>%{{z:,.1f}} {unit}<extra></extra>",
    ))
    fig.update_layout(title=title)
    fig.update_yaxes(autorange="reversed")
    return _finish(fig, height=max(HEIGHT, 40 + 28 * len(values.index)))


def bars(frame: pd.DataFrame, *, x: str, y: str, title: str, unit: str, color: str | None = None,
         money: bool = False) -> go.Figure:
    fig = px.bar(frame, x=x, y=y, color=color, title=title)
    value = "$%{y:,.2f}" if money else f"%{{y:,.1f}} {unit}"
    fig.update_traces(hovertemplate=f"%{{x}}<br>{value}<extra>%{{fullData.name}}</extra>")
    fig.update_yaxes(title_text=unit)
    fig.update_xaxes(title_text=None)
    return _finish(fig)


def events(frame: pd.DataFrame, *, x: str, y: str, text: str, title: str,
           categories: Sequence[str] | None = None) -> go.Figure:
    """Markers on a timeline (ECC, XID, throttle events): one row per kind, hover shows what happened."""
    fig = px.scatter(frame, x=x, y=y, color=y, hover_name=text, title=title,
                     category_orders={y: list(categories)} if categories else None)
    fig.update_traces(marker={"size": 10, "symbol": "diamond"})
    fig.update_yaxes(title_text=None)
    fig.update_xaxes(title_text=None)
    fig.update_layout(showlegend=False)
    return _finish(fig, height=220)
