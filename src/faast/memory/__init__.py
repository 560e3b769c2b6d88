"""Key→value memories sharing one interface (add / read / forget / reset): FAAST's inverse memory and
the softmax-attention and k-NN baselines."""

from faast.memory.base import Memory
from faast.memory.inverse import InverseMemory
from faast.memory.knn import KNNMemory
from faast.memory.softmax import SoftmaxMemory
from faast.memory.stored import StoredPairsMemory

__all__ = ["InverseMemory", "KNNMemory", "Memory", "SoftmaxMemory", "StoredPairsMemory"]
