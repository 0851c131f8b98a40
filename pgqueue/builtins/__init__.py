"""Built-in workers: file processing, B2 upload (S3 API), AMQP fan-out.

Imported only by apps that use them; the core never imports this package.
"""
