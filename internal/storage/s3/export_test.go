package s3

// SetCopyPartSize makes copies above size multipart copies of parts of
// size (S3's 5 GiB is too much for a test).
func (d *Driver) SetCopyPartSize(size int64) { d.copyPartSize = size }
