from .threaded_roi_extractor import ThreadedRoIExtractor

__all__ = ['ThreadedRoIExtractor']
