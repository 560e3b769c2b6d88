"""Key→value memories sharing one interface (add / read / reset): FAAST's inverse memory and
the softmax-attention and k-NN baselines."""

from faast.memory.base import Memory
from faast.memory.inverse import InverseMemory
from faast.memory.knn import KNNMemory
from faast.memory.softmax import SoftmaxMemory

__all__ = ["InverseMemory", "KNNMemory", "Memory", "SoftmaxMemory"]
