"""Where task functions run: locally, in child processes, or on django.tasks workers."""
